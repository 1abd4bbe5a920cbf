//! Aggregate queries behind the metrics: global counts for `/metrics` (one GROUP BY each,
//! never a loop over tenants) and one tenant's window for `/metrics/json`.

use super::schema::{agents, jobs};
use super::{id_floor, Db};
use crate::error::Result;
use crate::with_conn;
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::RunQueryDsl;

/// Jobs per status across all tenants.
pub async fn job_counts_by_status(db: &Db) -> Result<Vec<(String, i64)>> {
    with_conn!(db, |conn| {
        Ok(jobs::table
            .group_by(jobs::status)
            .select((jobs::status, count_star()))
            .load(conn)
            .await?)
    })
}

/// Agents per status across all tenants.
pub async fn agent_counts_by_status(db: &Db) -> Result<Vec<(String, i64)>> {
    with_conn!(db, |conn| {
        Ok(agents::table
            .group_by(agents::status)
            .select((agents::status, count_star()))
            .load(conn)
            .await?)
    })
}

/// The tenant's jobs created at or after `since`, counted per agent and status (read
/// from the (tenant_id, id) index from [`id_floor`] on).
pub async fn job_counts_since(db: &Db, tenant_id: &str, since: i64) -> Result<Vec<(String, String, i64)>> {
    let floor = id_floor("job", since);
    with_conn!(db, |conn| {
        Ok(jobs::table
            .filter(jobs::tenant_id.eq(tenant_id))
            .filter(jobs::id.ge(&floor))
            .filter(jobs::created_at.ge(since))
            .group_by((jobs::agent_name, jobs::status))
            .select((jobs::agent_name, jobs::status, count_star()))
            .load(conn)
            .await?)
    })
}

/// One duration at a rank that a percentile asks for, in its group (an agent, or the whole
/// tenant when `agent_name` is NULL).
#[derive(QueryableByName, Debug, Clone, PartialEq, Eq)]
pub struct RankedDuration {
    #[diesel(sql_type = Nullable<Text>)]
    pub agent_name: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub duration_ms: i64,
    /// 1-based position in the group's durations, in ascending order.
    #[diesel(sql_type = BigInt)]
    pub position: i64,
    /// How many durations the group has.
    #[diesel(sql_type = BigInt)]
    pub total: i64,
}

/// For the tenant's finished jobs with a duration created at or after `since`: per agent
/// and for the whole tenant, the durations at the nearest ranks of p50 and p95. The
/// database sorts and ranks; at most two rows per group come back, however many jobs
/// there are. The ranks are `ceil(p * n / 100)` in integer arithmetic (`(n * p + 99) / 100`),
/// as `summary::nearest_rank` computes them. Read from the (tenant_id, id) index from
/// [`id_floor`] on.
pub async fn duration_percentiles_since(db: &Db, tenant_id: &str, since: i64) -> Result<Vec<RankedDuration>> {
    const QUERY: &str = "WITH finished AS ( \
            SELECT agent_name, duration_ms FROM jobs \
            WHERE tenant_id = $1 AND id >= $3 AND created_at >= $2 AND duration_ms IS NOT NULL \
            AND status IN ('success', 'failed', 'timeout', 'cancelled', 'lost') \
        ), ranked AS ( \
            SELECT agent_name, duration_ms, \
                ROW_NUMBER() OVER (PARTITION BY agent_name ORDER BY duration_ms) AS position, \
                COUNT(*) OVER (PARTITION BY agent_name) AS total \
            FROM finished \
            UNION ALL \
            SELECT NULL, duration_ms, ROW_NUMBER() OVER (ORDER BY duration_ms), COUNT(*) OVER () \
            FROM finished \
        ) \
        SELECT agent_name, duration_ms, position, total FROM ranked \
        WHERE position = (total * 50 + 99) / 100 OR position = (total * 95 + 99) / 100";
    let sql = match db {
        Db::Postgres(_) => QUERY.to_owned(),
        // SQLite binds `?N` for PostgreSQL's `$N`.
        Db::Sqlite(_) => QUERY.replace('$', "?"),
    };
    let floor = id_floor("job", since);
    with_conn!(db, |conn| {
        Ok(diesel::sql_query(sql.as_str())
            .bind::<Text, _>(tenant_id)
            .bind::<BigInt, _>(since)
            .bind::<Text, _>(&floor)
            .load::<RankedDuration>(conn)
            .await?)
    })
}
