//! The audit log: who did or tried what, to what, from where, and whether it was allowed.
//! Entries are written in batches (`crate::audit`), read newest first a page at a time, and
//! pruned past the retention.

use super::models::AuditEntry;
use super::schema::audit_log;
use super::{id_floor, Db};
use crate::error::{Error, Result};
use crate::with_conn;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

/// Rows per INSERT (well under SQLite's limit on bound parameters: 12 columns each).
const INSERT_BATCH: usize = 500;
/// Rows per DELETE when pruning, so a prune never holds a long lock.
const PRUNE_BATCH: i64 = 1_000;

/// Writes entries: in batched INSERTs on PostgreSQL, in one transaction on SQLite (whose
/// diesel backend cannot batch rows with nullable columns).
pub async fn insert(db: &Db, entries: &[AuditEntry]) -> Result<()> {
    match db {
        Db::Postgres(pool) => {
            let mut conn = pool.get().await?;
            for batch in entries.chunks(INSERT_BATCH) {
                diesel::insert_into(audit_log::table)
                    .values(batch)
                    .execute(&mut conn)
                    .await?;
            }
            Ok(())
        }
        Db::Sqlite(pool) => {
            let mut conn = pool.get().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                for entry in entries {
                    diesel::insert_into(audit_log::table)
                        .values(entry)
                        .execute(conn)
                        .await?;
                }
                Ok(())
            })
            .await
        }
    }
}

/// What `GET /audit` asks for.
#[derive(Debug, Default)]
pub struct AuditFilter {
    /// An email, or a user's or key's id.
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Entries older than this one (the page cursor: ids are time-ordered).
    pub before_id: Option<String>,
}

/// The tenant's entries matching `filter`, newest first, at most `limit`.
pub async fn list(db: &Db, tenant_id: &str, filter: &AuditFilter, limit: i64) -> Result<Vec<AuditEntry>> {
    with_conn!(db, |conn| {
        let mut query = audit_log::table
            .filter(audit_log::tenant_id.eq(tenant_id))
            .select(AuditEntry::as_select())
            .order(audit_log::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(actor) = &filter.actor {
            query = query.filter(audit_log::actor.eq(actor).or(audit_log::actor_id.eq(actor)));
        }
        if let Some(action) = &filter.action {
            query = query.filter(audit_log::action.eq(action));
        }
        if let Some(target) = &filter.target {
            query = query.filter(audit_log::target.eq(target));
        }
        if let Some(since) = filter.since {
            query = query
                .filter(audit_log::id.ge(id_floor("aud", since)))
                .filter(audit_log::created_at.ge(since));
        }
        if let Some(until) = filter.until {
            query = query.filter(audit_log::created_at.le(until));
        }
        if let Some(before) = &filter.before_id {
            query = query.filter(audit_log::id.lt(before));
        }
        Ok(query.load(conn).await?)
    })
}

/// Deletes entries created before `before_ms`, a batch at a time; answers how many.
pub async fn prune(db: &Db, before_ms: i64) -> Result<usize> {
    let mut deleted = 0;
    loop {
        let ids: Vec<String> = with_conn!(db, |conn| {
            Ok::<_, Error>(
                audit_log::table
                    .filter(audit_log::created_at.lt(before_ms))
                    .select(audit_log::id)
                    .limit(PRUNE_BATCH)
                    .load(conn)
                    .await?,
            )
        })?;
        if ids.is_empty() {
            return Ok(deleted);
        }
        deleted += with_conn!(db, |conn| {
            Ok::<_, Error>(
                diesel::delete(audit_log::table.filter(audit_log::id.eq_any(&ids)))
                    .execute(conn)
                    .await?,
            )
        })?;
    }
}
