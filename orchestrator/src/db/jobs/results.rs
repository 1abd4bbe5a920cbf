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
/// output would be worse. Rows are updated in job-id order, so two replicas writing
/// overlapping batches lock them in the same order and never deadlock.
pub async fn write_batch(
    db: &Db,
    tenant_id: &str,
    new_jobs: &[Job],
    results: &[ResultWrite],
) -> Result<Vec<CompleteOutcome>> {
    let mut order: Vec<usize> = (0..results.len()).collect();
    order.sort_by(|&a, &b| results[a].job_id.cmp(&results[b].job_id));
    let mut outcomes: Vec<Option<CompleteOutcome>> = (0..results.len()).map(|_| None).collect();
    with_conn!(db, |conn| {
        conn.transaction::<_, Error, _>(async |conn| {
            conn.insert_jobs(new_jobs).await?;
            for &index in &order {
                let ResultWrite {
                    agent,
                    job_id,
                    completion: c,
                } = &results[index];
                let stored: Option<Job> = diesel::update(
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
                .optional()?;
                let outcome = match stored {
                    Some(job) => CompleteOutcome::Stored(Box::new(job)),
                    None => {
                        let current: Option<(String, String)> = jobs::table
                            .filter(jobs::id.eq(job_id))
                            .filter(jobs::tenant_id.eq(tenant_id))
                            .select((jobs::status, jobs::agent_name))
                            .first(conn)
                            .await
                            .optional()?;
                        unstored(current, agent)
                    }
                };
                outcomes[index] = Some(outcome);
            }
            Ok(())
        })
        .await
    })?;
    Ok(outcomes.into_iter().map(|o| o.expect("every result written")).collect())
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
