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

/// Records a heartbeat: liveness, the manifest re-read by the agent, its interval.
pub async fn record_heartbeat(
    db: &Db,
    tenant_id: &str,
    name: &str,
    now: i64,
    scripts: &str,
    interval_secs: i64,
    version: Option<&str>,
) -> Result<()> {
    with_conn!(db, |conn| {
        diesel::update(
            agents::table
                .filter(agents::tenant_id.eq(tenant_id))
                .filter(agents::name.eq(name)),
        )
        .set((
            agents::status.eq("online"),
            agents::last_heartbeat.eq(now),
            agents::scripts.eq(scripts),
            agents::manifest_reported.eq(true),
            agents::heartbeat_interval.eq(interval_secs),
            agents::version.eq(version),
            agents::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
        Ok(())
    })
}

pub async fn set_status(db: &Db, tenant_id: &str, name: &str, status: &str, now: i64) -> Result<()> {
    with_conn!(db, |conn| {
        diesel::update(
            agents::table
                .filter(agents::tenant_id.eq(tenant_id))
                .filter(agents::name.eq(name)),
        )
        .set((agents::status.eq(status), agents::updated_at.eq(now)))
        .execute(conn)
        .await?;
        Ok(())
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
