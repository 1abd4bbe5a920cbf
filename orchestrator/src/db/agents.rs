//! The agent registry's rows.

use super::models::Agent;
use super::schema::agents;
use super::Db;
use crate::error::Result;
use crate::with_conn;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

/// Inserts the agent or replaces the stored row of the same tenant and name.
pub async fn upsert(db: &Db, agent: &Agent) -> Result<()> {
    with_conn!(db, |conn| {
        diesel::insert_into(agents::table)
            .values(agent)
            .on_conflict((agents::tenant_id, agents::name))
            .do_update()
            .set(agent)
            .execute(conn)
            .await?;
        Ok(())
    })
}

pub async fn list(db: &Db, tenant_id: &str) -> Result<Vec<Agent>> {
    with_conn!(db, |conn| {
        Ok(agents::table
            .filter(agents::tenant_id.eq(tenant_id))
            .order(agents::name)
            .select(Agent::as_select())
            .load(conn)
            .await?)
    })
}

pub async fn find(db: &Db, tenant_id: &str, name: &str) -> Result<Option<Agent>> {
    with_conn!(db, |conn| {
        Ok(agents::table
            .filter(agents::tenant_id.eq(tenant_id))
            .filter(agents::name.eq(name))
            .select(Agent::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// A heartbeat as written.
pub struct HeartbeatRow<'a> {
    pub now: i64,
    /// The manifest as JSON.
    pub scripts: &'a str,
    pub interval_secs: i64,
    pub version: Option<&'a str>,
    /// Whether manifest, interval or version differ from the cached row: only then are they
    /// written (and other replicas told).
    pub manifest_changed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatWrite {
    Recorded,
    /// The agent was offline and is online again (exactly one heartbeat sees this).
    CameOnline,
    /// No such agent (it was deleted).
    Unknown,
}

/// Records a heartbeat: the time, and the manifest when it changed. An offline agent is
/// set online by a conditional write, so that the transition is seen once.
pub async fn record_heartbeat(
    db: &Db,
    tenant_id: &str,
    name: &str,
    heartbeat: &HeartbeatRow<'_>,
) -> Result<HeartbeatWrite> {
    let of_agent = || {
        agents::table
            .filter(agents::tenant_id.eq(tenant_id))
            .filter(agents::name.eq(name))
    };
    let manifest = (
        agents::scripts.eq(heartbeat.scripts),
        agents::manifest_reported.eq(true),
        agents::heartbeat_interval.eq(heartbeat.interval_secs),
        agents::version.eq(heartbeat.version),
    );
    with_conn!(db, |conn| {
        let written = if heartbeat.manifest_changed {
            diesel::update(of_agent().filter(agents::status.eq("online")))
                .set((
                    manifest,
                    agents::last_heartbeat.eq(heartbeat.now),
                    agents::updated_at.eq(heartbeat.now),
                ))
                .execute(conn)
                .await?
        } else {
            diesel::update(of_agent().filter(agents::status.eq("online")))
                .set(agents::last_heartbeat.eq(heartbeat.now))
                .execute(conn)
                .await?
        };
        if written == 1 {
            return Ok(HeartbeatWrite::Recorded);
        }
        let came_online = diesel::update(of_agent().filter(agents::status.ne("online")))
            .set((
                manifest,
                agents::status.eq("online"),
                agents::last_heartbeat.eq(heartbeat.now),
                agents::updated_at.eq(heartbeat.now),
            ))
            .execute(conn)
            .await?;
        if came_online == 1 {
            return Ok(HeartbeatWrite::CameOnline);
        }
        // Neither: another heartbeat of the agent raced this one, or the agent is gone.
        let exists: i64 = of_agent().count().get_result(conn).await?;
        Ok(if exists == 1 {
            HeartbeatWrite::Recorded
        } else {
            HeartbeatWrite::Unknown
        })
    })
}

/// Records the heartbeats of online agents whose manifest did not change, in one
/// statement: the time only. Returns the names it recorded; the others (offline,
/// deleted) take [`record_heartbeat`].
pub async fn record_heartbeats(db: &Db, tenant_id: &str, names: &[&str], now: i64) -> Result<Vec<String>> {
    with_conn!(db, |conn| {
        Ok(diesel::update(
            agents::table
                .filter(agents::tenant_id.eq(tenant_id))
                .filter(agents::name.eq_any(names))
                .filter(agents::status.eq("online")),
        )
        .set(agents::last_heartbeat.eq(now))
        .returning(agents::name)
        .get_results(conn)
        .await?)
    })
}

/// An agent is offline after this many heartbeat intervals without one.
pub const MISSED_HEARTBEATS: i64 = 3;
/// An agent not heard from since this orchestrator started gets at least this long (its
/// connections were cut, and it retries with backoff) before it is taken for silent.
pub const STARTUP_GRACE_MS: i64 = 10_000;

/// Marks offline every online agent silent for [`MISSED_HEARTBEATS`] intervals, counting
/// from `started_at` (this process's start) at the earliest, and for agents not heard from
/// since then also not before [`STARTUP_GRACE_MS`] after it. One conditional write: with
/// replicas, each agent is marked by exactly one. Returns the rows as now stored, with how
/// long each was silent (ms).
pub async fn mark_silent_offline(db: &Db, now: i64, started_at: i64) -> Result<Vec<(Agent, i64)>> {
    use diesel::sql_types::BigInt;
    // 3 is MISSED_HEARTBEATS, and 1000 turns the interval's seconds into ms.
    const PG: &str = "UPDATE agents SET status = 'offline', updated_at = $1 \
        WHERE status = 'online' AND COALESCE(last_heartbeat, 0) < $1 - 3 * heartbeat_interval * 1000 \
        AND $2 < $1 - 3 * heartbeat_interval * 1000 \
        AND (COALESCE(last_heartbeat, 0) >= $2 OR $1 >= $3) RETURNING *";
    const SQLITE: &str = "UPDATE agents SET status = 'offline', updated_at = ?1 \
        WHERE status = 'online' AND COALESCE(last_heartbeat, 0) < ?1 - 3 * heartbeat_interval * 1000 \
        AND ?2 < ?1 - 3 * heartbeat_interval * 1000 \
        AND (COALESCE(last_heartbeat, 0) >= ?2 OR ?1 >= ?3) RETURNING *";
    let sql = match db {
        Db::Postgres(_) => PG,
        Db::Sqlite(_) => SQLITE,
    };
    let rows: Vec<Agent> = with_conn!(db, |conn| {
        diesel::sql_query(sql)
            .bind::<BigInt, _>(now)
            .bind::<BigInt, _>(started_at)
            .bind::<BigInt, _>(started_at + STARTUP_GRACE_MS)
            .load::<Agent>(conn)
            .await?
    });
    Ok(rows
        .into_iter()
        .map(|row| {
            let silence = now - row.last_heartbeat.unwrap_or(0).max(started_at);
            (row, silence)
        })
        .collect())
}

/// (tenant, agent) of agents whose row changed at or after `since` (registration, status,
/// manifest), for the re-check of other replicas' changes.
pub async fn changed_since(db: &Db, since: i64) -> Result<Vec<(String, String)>> {
    with_conn!(db, |conn| {
        Ok(agents::table
            .filter(agents::updated_at.ge(since))
            .select((agents::tenant_id, agents::name))
            .load(conn)
            .await?)
    })
}

pub async fn delete(db: &Db, tenant_id: &str, name: &str) -> Result<bool> {
    with_conn!(db, |conn| {
        let deleted = diesel::delete(
            agents::table
                .filter(agents::tenant_id.eq(tenant_id))
                .filter(agents::name.eq(name)),
        )
        .execute(conn)
        .await?;
        Ok(deleted == 1)
    })
}

/// Tenants that have at least one agent: their supervisors start with the orchestrator.
pub async fn tenants_with_agents(db: &Db) -> Result<Vec<String>> {
    with_conn!(db, |conn| {
        Ok(agents::table
            .select(agents::tenant_id)
            .distinct()
            .load::<String>(conn)
            .await?)
    })
}
