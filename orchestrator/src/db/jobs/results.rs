//! Writing new jobs and agents' results, alone or many in one transaction (the
//! supervisor's group commit).

use super::{DISPATCHED, RUNNING};
use crate::db::models::Job;
use crate::db::schema::jobs;
use crate::db::{Db, SqliteAsync};
use crate::error::{Error, Result};
use crate::with_conn;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use shared_protocol::JobStatus;
use std::collections::HashMap;

/// Inserting a batch of jobs, as each backend does it best.
pub(super) trait InsertJobs {
    async fn insert_jobs(&mut self, batch: &[Job]) -> Result<()>;
}

impl InsertJobs for AsyncPgConnection {
    /// Multi-row inserts, a thousand rows a statement.
    async fn insert_jobs(&mut self, batch: &[Job]) -> Result<()> {
        for chunk in batch.chunks(1000) {
            diesel::insert_into(jobs::table).values(chunk).execute(self).await?;
        }
        Ok(())
    }
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

/// Inserts `new_jobs` and stores `results` in one transaction; the outcomes follow the
/// order of `results`. A result is stored only from the agent that holds the job; a job
/// already marked `lost` takes the late result, since the run did finish and losing its
/// output would be worse. On PostgreSQL the results go in one statement (arrays unnested
/// into rows), on SQLite one statement each, in job-id order.
pub async fn write_batch(
    db: &Db,
    tenant_id: &str,
    new_jobs: &[Job],
    results: &[ResultWrite],
) -> Result<Vec<CompleteOutcome>> {
    let mut stored: HashMap<String, Job> = match db {
        Db::Postgres(pool) => {
            let mut conn = pool.get().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                conn.insert_jobs(new_jobs).await?;
                if results.is_empty() {
                    return Ok(HashMap::new());
                }
                store_all_pg(conn, tenant_id, results).await
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
                Ok(stored)
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
    Ok(results
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
        .collect())
}

/// Every result in one UPDATE: the batch as arrays, one per column, unnested into rows.
async fn store_all_pg(
    conn: &mut AsyncPgConnection,
    tenant_id: &str,
    results: &[ResultWrite],
) -> Result<HashMap<String, Job>> {
    use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text};
    const SQL: &str = "UPDATE jobs SET status = r.status, exit_code = r.exit_code, stdout = r.stdout, \
        stderr = r.stderr, stdout_truncated = r.stdout_truncated, stderr_truncated = r.stderr_truncated, \
        duration_ms = r.duration_ms, started_at = r.started_at, completed_at = r.completed_at, reason = r.reason \
        FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) AS r(id, agent, status, exit_code, \
            stdout, stderr, stdout_truncated, stderr_truncated, duration_ms, started_at, completed_at, reason) \
        WHERE jobs.id = r.id AND jobs.tenant_id = $13 AND jobs.agent_name = r.agent \
        AND jobs.status IN ('dispatched', 'running', 'lost') RETURNING jobs.*";
    // One result per job: a batch that repeats a job stores its first result (the
    // repeats then find it stored: duplicates).
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<&ResultWrite> = results.iter().filter(|r| seen.insert(r.job_id.as_str())).collect();
    let column = |f: fn(&ResultWrite) -> String| unique.iter().map(|r| f(r)).collect::<Vec<String>>();
    let completions = || unique.iter().map(|r| &r.completion);
    let stored: Vec<Job> = diesel::sql_query(SQL)
        .bind::<Array<Text>, _>(column(|r| r.job_id.clone()))
        .bind::<Array<Text>, _>(column(|r| r.agent.clone()))
        .bind::<Array<Text>, _>(completions().map(|c| c.status.as_str().to_owned()).collect::<Vec<_>>())
        .bind::<Array<Nullable<Integer>>, _>(completions().map(|c| c.exit_code).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(completions().map(|c| c.stdout.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(completions().map(|c| c.stderr.as_str()).collect::<Vec<_>>())
        .bind::<Array<Bool>, _>(completions().map(|c| c.stdout_truncated).collect::<Vec<_>>())
        .bind::<Array<Bool>, _>(completions().map(|c| c.stderr_truncated).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(completions().map(|c| c.duration_ms).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(completions().map(|c| c.started_at).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(completions().map(|c| c.completed_at).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(completions().map(|c| c.reason.as_deref()).collect::<Vec<_>>())
        .bind::<Text, _>(tenant_id)
        .load(conn)
        .await?;
    Ok(stored.into_iter().map(|job| (job.id.clone(), job)).collect())
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
