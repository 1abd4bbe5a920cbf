//! The job queue and job results. Every status change is one conditional UPDATE, so a
//! transition happens once even when requests race (a retried report, two replicas).

use super::models::{Fanout, Job};
use super::schema::{fanouts, jobs};
use super::Db;
use crate::error::{Error, Result};
use crate::with_conn;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

mod claim;
pub mod output;
mod results;
pub mod rollout;

pub use claim::{ClaimWrite, Handover};
use results::InsertJobs;
pub use results::{write_batch, CompleteOutcome, Completion, ResultWrite, Written};

const PENDING: &str = "pending";
const DISPATCHED: &str = "dispatched";
const RUNNING: &str = "running";

/// Writes a fan-out and all its jobs in one transaction.
pub async fn insert_fanout(db: &Db, fanout: &Fanout, batch: &[Job]) -> Result<()> {
    with_conn!(db, |conn| {
        conn.transaction::<_, Error, _>(async |conn| {
            diesel::insert_into(fanouts::table).values(fanout).execute(conn).await?;
            conn.insert_jobs(batch).await
        })
        .await
    })
}

pub async fn find_fanout(db: &Db, tenant_id: &str, fanout_id: &str) -> Result<Option<Fanout>> {
    with_conn!(db, |conn| {
        Ok(fanouts::table
            .filter(fanouts::id.eq(fanout_id))
            .filter(fanouts::tenant_id.eq(tenant_id))
            .select(Fanout::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// A fan-out job without its output, with the output's size: enough for progress, and
/// for planning how many outputs to read at once.
pub struct FanoutJobState {
    pub id: String,
    pub agent_name: String,
    pub status: String,
    pub exit_code: Option<i32>,
    pub duration_ms: Option<i64>,
    /// Bytes of stdout plus stderr.
    pub output_bytes: i64,
    /// Pending, waiting for a rollout slot.
    pub awaiting_slot: bool,
}

diesel::define_sql_function! {
    /// SQL `octet_length(text)`, the same on PostgreSQL and SQLite (3.43+). Unlike
    /// `length`, neither reads the text to answer (PostgreSQL does not detoast it, SQLite
    /// does not load its overflow pages), so the job list stays cheap with large outputs.
    fn octet_length(text: diesel::sql_types::Text) -> diesel::sql_types::Integer;
}

/// The fan-out's jobs by agent name, outputs left in the database.
pub async fn fanout_job_states(db: &Db, tenant_id: &str, fanout_id: &str) -> Result<Vec<FanoutJobState>> {
    type Row = (String, String, String, Option<i32>, Option<i64>, i32, i32, bool);
    let rows: Vec<Row> = with_conn!(db, |conn| {
        jobs::table
            .filter(jobs::tenant_id.eq(tenant_id))
            .filter(jobs::fanout_id.eq(fanout_id))
            .order((jobs::agent_name, jobs::id))
            .select((
                jobs::id,
                jobs::agent_name,
                jobs::status,
                jobs::exit_code,
                jobs::duration_ms,
                octet_length(jobs::stdout),
                octet_length(jobs::stderr),
                jobs::awaiting_slot,
            ))
            .load(conn)
            .await?
    });
    Ok(rows
        .into_iter()
        .map(
            |(id, agent_name, status, exit_code, duration_ms, stdout_bytes, stderr_bytes, awaiting_slot)| {
                FanoutJobState {
                    id,
                    agent_name,
                    status,
                    exit_code,
                    duration_ms,
                    output_bytes: i64::from(stdout_bytes) + i64::from(stderr_bytes),
                    awaiting_slot,
                }
            },
        )
        .collect())
}

/// A job's result as the fan-out comparison reads it.
#[derive(Queryable)]
pub struct JobOutput {
    pub id: String,
    pub status: String,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The results of these jobs of the tenant (in no particular order).
pub async fn outputs(db: &Db, tenant_id: &str, job_ids: &[String]) -> Result<Vec<JobOutput>> {
    with_conn!(db, |conn| {
        Ok(jobs::table
            .filter(jobs::tenant_id.eq(tenant_id))
            .filter(jobs::id.eq_any(job_ids))
            .select((jobs::id, jobs::status, jobs::exit_code, jobs::stdout, jobs::stderr))
            .load(conn)
            .await?)
    })
}

/// Puts jobs just handed over (dispatched, or running by an implicit start) that no poll
/// took back in the queue.
pub async fn requeue(db: &Db, tenant_id: &str, ids: &[String]) -> Result<usize> {
    with_conn!(db, |conn| {
        Ok(diesel::update(
            jobs::table
                .filter(jobs::tenant_id.eq(tenant_id))
                .filter(jobs::id.eq_any(ids))
                .filter(jobs::status.eq_any([DISPATCHED, RUNNING])),
        )
        .set((
            jobs::status.eq(PENDING),
            jobs::dispatched_at.eq(None::<i64>),
            jobs::started_at.eq(None::<i64>),
        ))
        .execute(conn)
        .await?)
    })
}

/// Requeues jobs dispatched before `cutoff` whose agent never confirmed the start
/// (the poll answer was lost on the way). Returns (tenant, agent) pairs to wake.
pub async fn requeue_unstarted(db: &Db, cutoff: i64) -> Result<Vec<(String, String)>> {
    with_conn!(db, |conn| {
        Ok(diesel::update(
            jobs::table
                .filter(jobs::status.eq(DISPATCHED))
                .filter(jobs::dispatched_at.lt(cutoff)),
        )
        .set((jobs::status.eq(PENDING), jobs::dispatched_at.eq(None::<i64>)))
        .returning((jobs::tenant_id, jobs::agent_name))
        .get_results::<(String, String)>(conn)
        .await?)
    })
}

pub enum StartOutcome {
    /// Running. `created_at` is the job's creation time when this report started it (not
    /// when it repeats an earlier start).
    Started { created_at: Option<i64> },
    /// The job was cancelled (or taken away) before it started: the agent must not run it.
    Refused(String),
}

/// `dispatched` -> `running`, only for the agent that holds the job. A repeated start is fine.
pub async fn mark_started(
    db: &Db,
    tenant_id: &str,
    agent: &str,
    job_id: &str,
    started_at: i64,
) -> Result<StartOutcome> {
    with_conn!(db, |conn| {
        let changed = diesel::update(
            jobs::table
                .filter(jobs::id.eq(job_id))
                .filter(jobs::tenant_id.eq(tenant_id))
                .filter(jobs::agent_name.eq(agent))
                .filter(jobs::status.eq(DISPATCHED))
                .filter(jobs::cancel_requested.eq(false)),
        )
        .set((jobs::status.eq(RUNNING), jobs::started_at.eq(started_at)))
        .returning(jobs::created_at)
        .get_result::<i64>(conn)
        .await
        .optional()?;
        if let Some(created_at) = changed {
            return Ok(StartOutcome::Started {
                created_at: Some(created_at),
            });
        }
        let current: Option<(String, String)> = jobs::table
            .filter(jobs::id.eq(job_id))
            .filter(jobs::tenant_id.eq(tenant_id))
            .select((jobs::status, jobs::agent_name))
            .first(conn)
            .await
            .optional()?;
        Ok(match current {
            Some((status, holder)) if status == RUNNING && holder == agent => {
                StartOutcome::Started { created_at: None }
            }
            Some((status, holder)) if holder == agent => StartOutcome::Refused(format!("job is {status}")),
            _ => StartOutcome::Refused("this agent does not hold the job".into()),
        })
    })
}

/// The jobs an agent that starts implicitly holds, from its heartbeat.
pub struct Held<'a> {
    pub agent: &'a str,
    pub jobs: &'a [String],
}

/// Jobs agents that start implicitly were handed at least a while ago (`before`) but do
/// not hold (`held`, from their heartbeats): the poll answer never reached them, so they
/// go back to the queue. One statement for all the agents. Returns the agent of each job
/// requeued.
pub async fn requeue_unheld(db: &Db, tenant_id: &str, held: &[Held<'_>], before: i64) -> Result<Vec<String>> {
    let agents: Vec<&str> = held.iter().map(|h| h.agent).collect();
    // As "agent job": agent names hold no spaces, so each names one job of one agent, and
    // no agent's list can keep another agent's job.
    let kept: Vec<String> = held
        .iter()
        .flat_map(|h| h.jobs.iter().map(move |job| format!("{} {job}", h.agent)))
        .collect();
    with_conn!(db, |conn| {
        Ok(diesel::update(
            jobs::table
                .filter(jobs::tenant_id.eq(tenant_id))
                .filter(jobs::agent_name.eq_any(&agents))
                .filter(jobs::status.eq(RUNNING))
                .filter(jobs::dispatched_at.lt(before))
                .filter(jobs::agent_name.concat(" ").concat(jobs::id).ne_all(&kept)),
        )
        .set((
            jobs::status.eq(PENDING),
            jobs::dispatched_at.eq(None::<i64>),
            jobs::started_at.eq(None::<i64>),
        ))
        .returning(jobs::agent_name)
        .get_results(conn)
        .await?)
    })
}

/// The agent is gone: its running jobs end `lost` (with the reason), its dispatched but
/// unstarted jobs go back to the queue. Jobs in `keep` (still running on a restarted
/// agent) are left alone. Returns the jobs marked lost.
pub async fn release_agent_jobs(
    db: &Db,
    tenant_id: &str,
    agent: &str,
    keep: &[String],
    reason: &str,
    now: i64,
) -> Result<Vec<Job>> {
    with_conn!(db, |conn| {
        diesel::update(
            jobs::table
                .filter(jobs::tenant_id.eq(tenant_id))
                .filter(jobs::agent_name.eq(agent))
                .filter(jobs::status.eq(DISPATCHED))
                .filter(jobs::id.ne_all(keep)),
        )
        .set((jobs::status.eq(PENDING), jobs::dispatched_at.eq(None::<i64>)))
        .execute(conn)
        .await?;
        Ok(diesel::update(
            jobs::table
                .filter(jobs::tenant_id.eq(tenant_id))
                .filter(jobs::agent_name.eq(agent))
                .filter(jobs::status.eq(RUNNING))
                .filter(jobs::id.ne_all(keep)),
        )
        .set((
            jobs::status.eq("lost"),
            jobs::reason.eq(reason),
            jobs::stderr.eq(reason),
            jobs::completed_at.eq(now),
        ))
        .returning(Job::as_returning())
        .get_results(conn)
        .await?)
    })
}

pub enum CancelOutcome {
    /// It had not started: it is now `cancelled`.
    Cancelled(Job),
    /// It is running: the agent has been asked to kill it.
    Requested(Job),
    AlreadyFinished(Job),
}

pub async fn cancel(db: &Db, tenant_id: &str, job_id: &str, reason: &str, now: i64) -> Result<CancelOutcome> {
    with_conn!(db, |conn| {
        let cancelled: Option<Job> = diesel::update(
            jobs::table
                .filter(jobs::id.eq(job_id))
                .filter(jobs::tenant_id.eq(tenant_id))
                .filter(jobs::status.eq_any([PENDING, DISPATCHED])),
        )
        .set((
            jobs::status.eq("cancelled"),
            jobs::cancel_requested.eq(true),
            jobs::reason.eq(reason),
            jobs::completed_at.eq(now),
        ))
        .returning(Job::as_returning())
        .get_result(conn)
        .await
        .optional()?;
        if let Some(job) = cancelled {
            return Ok(CancelOutcome::Cancelled(job));
        }
        let requested: Option<Job> = diesel::update(
            jobs::table
                .filter(jobs::id.eq(job_id))
                .filter(jobs::tenant_id.eq(tenant_id))
                .filter(jobs::status.eq(RUNNING)),
        )
        .set((jobs::cancel_requested.eq(true), jobs::reason.eq(reason)))
        .returning(Job::as_returning())
        .get_result(conn)
        .await
        .optional()?;
        if let Some(job) = requested {
            return Ok(CancelOutcome::Requested(job));
        }
        let job = jobs::table
            .filter(jobs::id.eq(job_id))
            .filter(jobs::tenant_id.eq(tenant_id))
            .select(Job::as_select())
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| Error::not_found(format!("job {job_id}")))?;
        Ok(CancelOutcome::AlreadyFinished(job))
    })
}

/// Cancels every job still queued for an agent (the agent was deleted).
pub async fn cancel_queued_for_agent(db: &Db, tenant_id: &str, agent: &str, reason: &str, now: i64) -> Result<usize> {
    with_conn!(db, |conn| {
        Ok(diesel::update(
            jobs::table
                .filter(jobs::tenant_id.eq(tenant_id))
                .filter(jobs::agent_name.eq(agent))
                .filter(jobs::status.eq_any([PENDING, DISPATCHED])),
        )
        .set((
            jobs::status.eq("cancelled"),
            jobs::reason.eq(reason),
            jobs::completed_at.eq(now),
        ))
        .execute(conn)
        .await?)
    })
}

/// (agent, job) of the running jobs of these agents that were cancelled: the agents must
/// kill them.
pub async fn cancel_requests(db: &Db, tenant_id: &str, agents: &[&str]) -> Result<Vec<(String, String)>> {
    with_conn!(db, |conn| {
        Ok(jobs::table
            .filter(jobs::tenant_id.eq(tenant_id))
            .filter(jobs::agent_name.eq_any(agents))
            .filter(jobs::status.eq_any([RUNNING, DISPATCHED]))
            .filter(jobs::cancel_requested.eq(true))
            .select((jobs::agent_name, jobs::id))
            .load(conn)
            .await?)
    })
}

pub async fn find(db: &Db, tenant_id: &str, job_id: &str) -> Result<Option<Job>> {
    with_conn!(db, |conn| {
        Ok(jobs::table
            .filter(jobs::id.eq(job_id))
            .filter(jobs::tenant_id.eq(tenant_id))
            .select(Job::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// The tenant's job, or the API's 404.
pub async fn get(db: &Db, tenant_id: &str, job_id: &str) -> Result<Job> {
    find(db, tenant_id, job_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("job {job_id}")))
}

#[derive(Default)]
pub struct JobFilter {
    pub agent: Option<String>,
    pub status: Option<String>,
    pub script: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Only jobs with an id below this one (the previous page's last id).
    pub before_id: Option<String>,
}

/// The tenant's jobs matching `filter`, newest first.
pub async fn list(db: &Db, tenant_id: &str, filter: &JobFilter, limit: i64) -> Result<Vec<Job>> {
    with_conn!(db, |conn| {
        let mut query = jobs::table
            .filter(jobs::tenant_id.eq(tenant_id.to_owned()))
            .select(Job::as_select())
            .order(jobs::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(agent) = &filter.agent {
            query = query.filter(jobs::agent_name.eq(agent.clone()));
        }
        if let Some(status) = &filter.status {
            query = query.filter(jobs::status.eq(status.clone()));
        }
        if let Some(script) = &filter.script {
            query = query.filter(jobs::script.eq(script.clone()));
        }
        if let Some(since) = filter.since {
            query = query.filter(jobs::created_at.ge(since));
        }
        if let Some(until) = filter.until {
            query = query.filter(jobs::created_at.lt(until));
        }
        if let Some(before) = &filter.before_id {
            query = query.filter(jobs::id.lt(before.clone()));
        }
        Ok(query.load(conn).await?)
    })
}

/// (tenant, agent) pairs with queued jobs, for the re-check of other replicas' changes
/// (an index on pending jobs keeps it cheap).
pub async fn queued_agents(db: &Db) -> Result<Vec<(String, String)>> {
    with_conn!(db, |conn| {
        Ok(jobs::table
            .filter(jobs::status.eq(PENDING))
            .filter(jobs::awaiting_slot.eq(false))
            .select((jobs::tenant_id, jobs::agent_name))
            .distinct()
            .load(conn)
            .await?)
    })
}

/// (tenant, agent, job) of every cancel order an agent has yet to carry out.
pub async fn outstanding_cancels(db: &Db) -> Result<Vec<(String, String, String)>> {
    with_conn!(db, |conn| {
        Ok(jobs::table
            .filter(jobs::status.eq_any([RUNNING, DISPATCHED]))
            .filter(jobs::cancel_requested.eq(true))
            .select((jobs::tenant_id, jobs::agent_name, jobs::id))
            .load(conn)
            .await?)
    })
}
