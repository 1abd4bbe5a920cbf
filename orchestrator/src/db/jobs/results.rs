//! Writing new jobs and agents' results, alone or many in one transaction (the
//! supervisor's group commit).

use super::claim::{claim_pg, claim_sqlite, ClaimWrite};
use super::{DISPATCHED, RUNNING};
use crate::db::models::Job;
use crate::db::schema::jobs;
use crate::db::{Db, SqliteAsync};
use crate::error::{Error, Result};
use crate::with_conn;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared_protocol::JobStatus;
use std::collections::HashMap;

/// Inserting a batch of jobs, as each backend does it best.
pub(super) trait InsertJobs {
    async fn insert_jobs(&mut self, batch: &[Job]) -> Result<()>;
}

impl InsertJobs for AsyncPgConnection {
    async fn insert_jobs(&mut self, batch: &[Job]) -> Result<()> {
        insert_pg(self, batch).await
    }
}

/// Multi-row inserts, a thousand rows a statement. Takes the connection shared, so that
/// it can be pipelined with other statements.
async fn insert_pg(mut conn: &AsyncPgConnection, batch: &[Job]) -> Result<()> {
    for chunk in batch.chunks(1000) {
        diesel::insert_into(jobs::table)
            .values(chunk)
            .execute(&mut conn)
            .await?;
    }
    Ok(())
}

impl InsertJobs for SqliteAsync {
    /// One statement a row: SQLite cannot batch rows that leave columns to their defaults,
    /// and in one transaction the rows cost little each.
    async fn insert_jobs(&mut self, batch: &[Job]) -> Result<()> {
        for job in batch {
            diesel::insert_into(jobs::table).values(job).execute(self).await?;
        }
        Ok(())
    }
}

/// What a finished run wrote.
#[derive(Clone, Debug)]
pub struct Completion {
    pub status: JobStatus,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub duration_ms: i64,
    pub started_at: i64,
    pub completed_at: i64,
    pub reason: Option<String>,
}

/// One agent's result for one job.
#[derive(Clone, Debug)]
pub struct ResultWrite {
    /// The agent that reports it; only the job's holder may.
    pub agent: String,
    pub job_id: String,
    pub completion: Completion,
}

#[derive(Debug)]
pub enum CompleteOutcome {
    Stored(Box<Job>),
    /// The result had been stored before (a retried report): nothing changed.
    Duplicate,
    Refused(String),
}

/// What one transaction of the group commit wrote: the results' outcomes in the order of
/// the results, and each claim's jobs in the order of the claims.
#[derive(Debug)]
pub struct Written {
    pub outcomes: Vec<CompleteOutcome>,
    pub claimed: Vec<Vec<Job>>,
}

/// Inserts `new_jobs`, stores `results` and runs `claims` in one transaction (on
/// PostgreSQL as three pipelined statements: one round trip between BEGIN and COMMIT).
/// A result is stored only from the agent that holds the job; a job already marked `lost`
/// takes the late result, since the run did finish and losing its output would be worse. On PostgreSQL the results go in one statement (arrays unnested
/// into rows), on SQLite one statement each, in job-id order.
pub async fn write_batch(
    db: &Db,
    tenant_id: &str,
    new_jobs: &[Job],
    results: &[ResultWrite],
    claims: &[ClaimWrite],
) -> Result<Written> {
    let now = crate::db::now_ms();
    let (mut stored, claimed): (HashMap<String, Job>, Vec<Vec<Job>>) = match db {
        Db::Postgres(pool) => {
            let mut conn = pool.get().await?;
            // The three statements are pipelined: sent together, answered in one round
            // trip, inside the transaction.
            crate::db::pg_transaction(&mut conn, BEGIN_WITH_GENERIC_PLANS, async |conn| {
                let conn: &AsyncPgConnection = conn;
                let (_, stored, claimed) = futures_util::try_join!(
                    insert_pg(conn, new_jobs),
                    store_all_pg(conn, tenant_id, results),
                    claim_pg(conn, tenant_id, claims, now),
                )?;
                Ok((stored, claimed))
            })
            .await?
        }
        Db::Sqlite(pool) => {
            let mut conn = pool.get().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                conn.insert_jobs(new_jobs).await?;
                let mut order: Vec<&ResultWrite> = results.iter().collect();
                order.sort_by(|a, b| a.job_id.cmp(&b.job_id));
                let mut stored = HashMap::new();
                for result in order {
                    if let Some(job) = store_one_sqlite(conn, tenant_id, result).await? {
                        stored.insert(job.id.clone(), job);
                    }
                }
                Ok((stored, claim_sqlite(conn, tenant_id, claims, now).await?))
            })
            .await?
        }
    };
    // Why the others matched no row: read after the commit (a refused or duplicate result
    // changes nothing, so nothing needs holding).
    let unmatched: Vec<String> = results
        .iter()
        .filter(|r| !stored.contains_key(&r.job_id))
        .map(|r| r.job_id.clone())
        .collect();
    let current: HashMap<String, (String, String)> = if unmatched.is_empty() {
        HashMap::new()
    } else {
        with_conn!(db, |conn| {
            jobs::table
                .filter(jobs::tenant_id.eq(tenant_id))
                .filter(jobs::id.eq_any(&unmatched))
                .select((jobs::id, jobs::status, jobs::agent_name))
                .load::<(String, String, String)>(conn)
                .await?
        })
        .into_iter()
        .map(|(id, status, agent)| (id, (status, agent)))
        .collect()
    };
    let mut stored_here = std::collections::HashSet::new();
    let outcomes = results
        .iter()
        .map(|r| match stored.remove(&r.job_id) {
            Some(job) => {
                stored_here.insert(r.job_id.as_str());
                CompleteOutcome::Stored(Box::new(job))
            }
            // The same job again in this batch: its first result was stored.
            None if stored_here.contains(r.job_id.as_str()) => CompleteOutcome::Duplicate,
            None => unstored(current.get(&r.job_id).cloned(), &r.agent),
        })
        .collect();
    Ok(Written { outcomes, claimed })
}

/// How the group commit's transaction begins on PostgreSQL. Its statements take their rows
/// as arrays. A custom plan sees each array's length and so always looks cheaper than the
/// generic plan (costed for 100 rows): PostgreSQL would plan every execution anew, ~18 % of
/// its CPU in the bench. The generic plans are the same index probes (EXPLAIN on 200,000
/// jobs, with and without statistics: one `jobs_tenant` probe per result, one
/// `jobs_claimable` range per claim), so this transaction keeps them.
const BEGIN_WITH_GENERIC_PLANS: &str = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan";

/// Every result in one UPDATE: the batch as arrays, one per column, unnested into rows.
async fn store_all_pg(
    mut conn: &AsyncPgConnection,
    tenant_id: &str,
    results: &[ResultWrite],
) -> Result<HashMap<String, Job>> {
    if results.is_empty() {
        return Ok(HashMap::new());
    }
    // One result per job: a batch that repeats a job stores its first result (the
    // repeats then find it stored: duplicates).
    let mut seen = std::collections::HashSet::new();
    let mut unique: Vec<&ResultWrite> = results.iter().filter(|r| seen.insert(r.job_id.as_str())).collect();
    // In job-id order: two transactions in flight that both hold results for the same jobs
    // (retried reports) lock them in the same order, so neither deadlocks the other.
    unique.sort_by(|a, b| a.job_id.cmp(&b.job_id));
    let completions = || unique.iter().map(|r| &r.completion);
    let update = ResultsUpdate {
        ids: unique.iter().map(|r| r.job_id.as_str()).collect(),
        agents: unique.iter().map(|r| r.agent.as_str()).collect(),
        statuses: completions().map(|c| c.status.as_str()).collect(),
        exit_codes: completions().map(|c| c.exit_code).collect(),
        stdouts: completions().map(|c| c.stdout.as_str()).collect(),
        stderrs: completions().map(|c| c.stderr.as_str()).collect(),
        stdout_truncated: completions().map(|c| c.stdout_truncated).collect(),
        stderr_truncated: completions().map(|c| c.stderr_truncated).collect(),
        durations: completions().map(|c| c.duration_ms).collect(),
        started: completions().map(|c| c.started_at).collect(),
        completed: completions().map(|c| c.completed_at).collect(),
        reasons: completions().map(|c| c.reason.as_deref()).collect(),
        tenant_id,
    };
    let stored: Vec<Job> = update.load(&mut conn).await?;
    Ok(stored.into_iter().map(|job| (job.id.clone(), job)).collect())
}

/// The results UPDATE as a statement of fixed text (static query id), so each connection
/// prepares it once instead of planning it again for every batch.
struct ResultsUpdate<'a> {
    ids: Vec<&'a str>,
    agents: Vec<&'a str>,
    statuses: Vec<&'a str>,
    exit_codes: Vec<Option<i32>>,
    stdouts: Vec<&'a str>,
    stderrs: Vec<&'a str>,
    stdout_truncated: Vec<bool>,
    stderr_truncated: Vec<bool>,
    durations: Vec<i64>,
    started: Vec<i64>,
    completed: Vec<i64>,
    reasons: Vec<Option<&'a str>>,
    tenant_id: &'a str,
}

crate::fixed_statement!(ResultsUpdate);

impl QueryFragment<Pg> for ResultsUpdate<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text};
        out.push_sql(
            "UPDATE jobs SET status = r.status, exit_code = r.exit_code, stdout = r.stdout, \
             stderr = r.stderr, stdout_truncated = r.stdout_truncated, stderr_truncated = r.stderr_truncated, \
             duration_ms = r.duration_ms, started_at = r.started_at, completed_at = r.completed_at, reason = r.reason \
             FROM unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(&self.ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.agents)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.statuses)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Integer>>, _>(&self.exit_codes)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.stdouts)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.stderrs)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Bool>, _>(&self.stdout_truncated)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Bool>, _>(&self.stderr_truncated)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.durations)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.started)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.completed)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.reasons)?;
        out.push_sql(
            ") AS r(id, agent, status, exit_code, stdout, stderr, stdout_truncated, stderr_truncated, \
             duration_ms, started_at, completed_at, reason) \
             WHERE jobs.id = r.id AND jobs.tenant_id = ",
        );
        out.push_bind_param::<Text, _>(&self.tenant_id)?;
        out.push_sql(
            " AND jobs.agent_name = r.agent AND jobs.status IN ('dispatched', 'running', 'lost') RETURNING jobs.*",
        );
        Ok(())
    }
}

/// One result, one conditional UPDATE.
async fn store_one_sqlite(conn: &mut SqliteAsync, tenant_id: &str, result: &ResultWrite) -> Result<Option<Job>> {
    let ResultWrite {
        agent,
        job_id,
        completion: c,
    } = result;
    Ok(diesel::update(
        jobs::table
            .filter(jobs::id.eq(job_id))
            .filter(jobs::tenant_id.eq(tenant_id))
            .filter(jobs::agent_name.eq(agent))
            .filter(jobs::status.eq_any([DISPATCHED, RUNNING, "lost"])),
    )
    .set((
        jobs::status.eq(c.status.as_str()),
        jobs::exit_code.eq(c.exit_code),
        jobs::stdout.eq(&c.stdout),
        jobs::stderr.eq(&c.stderr),
        jobs::stdout_truncated.eq(c.stdout_truncated),
        jobs::stderr_truncated.eq(c.stderr_truncated),
        jobs::duration_ms.eq(c.duration_ms),
        jobs::started_at.eq(c.started_at),
        jobs::completed_at.eq(c.completed_at),
        jobs::reason.eq(c.reason.as_deref()),
    ))
    .returning(Job::as_returning())
    .get_result(conn)
    .await
    .optional()?)
}

/// Why a result matched no row, from the job's current status and holder.
fn unstored(current: Option<(String, String)>, agent: &str) -> CompleteOutcome {
    match current {
        Some((_, holder)) if holder != agent => CompleteOutcome::Refused("this agent does not hold the job".into()),
        Some((status, _)) if JobStatus::parse(&status).is_some_and(JobStatus::is_terminal) => {
            CompleteOutcome::Duplicate
        }
        Some((status, _)) => CompleteOutcome::Refused(format!("job is {status}, not running")),
        None => CompleteOutcome::Refused("no such job".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current(status: &str, holder: &str) -> Option<(String, String)> {
        Some((status.into(), holder.into()))
    }

    #[test]
    fn a_result_for_a_finished_job_is_a_duplicate() {
        assert!(matches!(
            unstored(current("success", "a"), "a"),
            CompleteOutcome::Duplicate
        ));
        assert!(matches!(
            unstored(current("cancelled", "a"), "a"),
            CompleteOutcome::Duplicate
        ));
    }

    #[test]
    fn a_result_from_another_agent_or_for_no_job_is_refused() {
        assert!(matches!(
            unstored(current("running", "b"), "a"),
            CompleteOutcome::Refused(_)
        ));
        assert!(matches!(unstored(None, "a"), CompleteOutcome::Refused(_)));
        match unstored(current("pending", "a"), "a") {
            CompleteOutcome::Refused(why) => assert_eq!(why, "job is pending, not running"),
            other => panic!("{other:?}"),
        }
    }
}
