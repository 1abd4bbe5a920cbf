//! Rollout controls of a fan-out, kept by the database so that every replica enforces the
//! same limits: jobs beyond `max_concurrency` are written `awaiting_slot` (pending, but no
//! claim takes them) and released in job-id order as earlier ones finish; once
//! `max_errors` jobs failed (failed, timeout or lost), the jobs not yet handed out end
//! `cancelled` with the reason.

use crate::db::models::Job;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::with_conn;
use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, RunQueryDsl};

/// What one step of a rollout changed.
#[derive(Debug, Default)]
pub struct RolloutStep {
    /// Agents whose jobs were released to them (one entry per job).
    pub released: Vec<String>,
    /// Jobs cancelled because the rollout stopped.
    pub cancelled: Vec<Job>,
}

#[derive(QueryableByName)]
struct Released {
    #[diesel(sql_type = Text)]
    agent_name: String,
}

/// PostgreSQL: the fan-out's row lock makes replicas take their steps one at a time; each
/// statement after it then counts with a snapshot that includes the previous step.
const PG_LOCK: &str = "SELECT id FROM fanouts WHERE id = $2 AND tenant_id = $1 FOR UPDATE";
const PG_CANCEL: &str = "UPDATE jobs SET status = 'cancelled', awaiting_slot = FALSE, completed_at = $3, \
    reason = 'rollout stopped: ' || (SELECT count(*) FROM jobs WHERE fanout_id = $2 \
        AND status IN ('failed', 'timeout', 'lost')) \
        || ' of the fan-out''s jobs failed, max_errors is ' || (SELECT max_errors FROM fanouts WHERE id = $2) \
    WHERE tenant_id = $1 AND fanout_id = $2 AND status = 'pending' \
    AND (SELECT count(*) FROM jobs WHERE fanout_id = $2 AND status IN ('failed', 'timeout', 'lost')) \
        >= (SELECT max_errors FROM fanouts WHERE id = $2) \
    RETURNING *";
const PG_RELEASE: &str = "WITH next AS MATERIALIZED (SELECT id FROM jobs \
        WHERE tenant_id = $1 AND fanout_id = $2 AND awaiting_slot ORDER BY id \
        LIMIT GREATEST(0, COALESCE((SELECT max_concurrency FROM fanouts WHERE id = $2), 0) \
            - (SELECT count(*) FROM jobs WHERE fanout_id = $2 \
                AND status IN ('pending', 'dispatched', 'running') AND NOT awaiting_slot))) \
    UPDATE jobs SET awaiting_slot = FALSE, reason = NULL FROM next \
    WHERE jobs.id = next.id AND jobs.status = 'pending' RETURNING jobs.agent_name";

/// SQLite: each statement writes, so the first takes the write lock and the step runs
/// alone. Numbered parameters, bound in the same order as on PostgreSQL.
const SQLITE_CANCEL: &str = "UPDATE jobs SET status = 'cancelled', awaiting_slot = 0, completed_at = ?3, \
    reason = 'rollout stopped: ' || (SELECT count(*) FROM jobs WHERE fanout_id = ?2 \
        AND status IN ('failed', 'timeout', 'lost')) \
        || ' of the fan-out''s jobs failed, max_errors is ' || (SELECT max_errors FROM fanouts WHERE id = ?2) \
    WHERE tenant_id = ?1 AND fanout_id = ?2 AND status = 'pending' \
    AND (SELECT count(*) FROM jobs WHERE fanout_id = ?2 AND status IN ('failed', 'timeout', 'lost')) \
        >= (SELECT max_errors FROM fanouts WHERE id = ?2) \
    RETURNING *";
const SQLITE_RELEASE: &str = "UPDATE jobs SET awaiting_slot = 0, reason = NULL WHERE status = 'pending' \
    AND id IN (SELECT id FROM jobs \
        WHERE tenant_id = ?1 AND fanout_id = ?2 AND awaiting_slot ORDER BY id \
        LIMIT max(0, coalesce((SELECT max_concurrency FROM fanouts WHERE id = ?2), 0) \
            - (SELECT count(*) FROM jobs WHERE fanout_id = ?2 \
                AND status IN ('pending', 'dispatched', 'running') AND NOT awaiting_slot))) \
    RETURNING agent_name";

/// Takes the next step of a fan-out's rollout: stops it if it failed too often, else
/// releases jobs into the slots that finished ones freed. The controls are fixed when the
/// fan-out is written, so they are read first, unlocked: a fan-out without them (most)
/// costs one primary-key read, and only the statements its controls need run.
pub async fn advance(db: &Db, tenant_id: &str, fanout_id: &str, now: i64) -> Result<RolloutStep> {
    let Some(fanout) = super::find_fanout(db, tenant_id, fanout_id).await? else {
        return Ok(RolloutStep::default());
    };
    let (stops, limits) = (fanout.max_errors.is_some(), fanout.max_concurrency.is_some());
    if !stops && !limits {
        return Ok(RolloutStep::default());
    }
    let (lock, cancel, release) = match db {
        Db::Postgres(_) => (Some(PG_LOCK), PG_CANCEL, PG_RELEASE),
        Db::Sqlite(_) => (None, SQLITE_CANCEL, SQLITE_RELEASE),
    };
    with_conn!(db, |conn| {
        conn.transaction::<_, Error, _>(async |conn| {
            if let Some(lock) = lock {
                diesel::sql_query(lock)
                    .bind::<Text, _>(tenant_id)
                    .bind::<Text, _>(fanout_id)
                    .execute(conn)
                    .await?;
            }
            let mut step = RolloutStep::default();
            if stops {
                step.cancelled = diesel::sql_query(cancel)
                    .bind::<Text, _>(tenant_id)
                    .bind::<Text, _>(fanout_id)
                    .bind::<BigInt, _>(now)
                    .load(conn)
                    .await?;
            }
            if limits {
                let released: Vec<Released> = diesel::sql_query(release)
                    .bind::<Text, _>(tenant_id)
                    .bind::<Text, _>(fanout_id)
                    .load(conn)
                    .await?;
                step.released = released.into_iter().map(|r| r.agent_name).collect();
            }
            Ok(step)
        })
        .await
    })
}

/// (tenant, fan-out) of every rollout with jobs awaiting a slot: the once-a-second
/// re-check advances them, so a step lost to a crash or a failed write delays them only.
pub async fn awaiting(db: &Db) -> Result<Vec<(String, String)>> {
    use crate::db::schema::jobs;
    use diesel::{ExpressionMethods, QueryDsl};
    with_conn!(db, |conn| {
        let rows: Vec<(String, Option<String>)> = jobs::table
            .filter(jobs::awaiting_slot.eq(true))
            .select((jobs::tenant_id, jobs::fanout_id))
            .distinct()
            .load(conn)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(tenant, fanout)| Some((tenant, fanout?)))
            .collect())
    })
}
