//! The domain event log (job.succeeded, agent.offline, ...), read by integrations.

use super::models::Event;
use super::schema::events;
use super::Db;
use crate::error::{Error, Result};
use crate::with_conn;
use diesel::prelude::*;
use diesel_async::AsyncConnection;
use diesel_async::RunQueryDsl;

/// Writes a batch of events: multi-row statements on PostgreSQL, one transaction of
/// single rows on SQLite (which cannot batch rows with defaults).
pub async fn insert_many(db: &Db, batch: &[Event]) -> Result<()> {
    match db {
        Db::Postgres(pool) => {
            let mut conn = pool.get().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                for chunk in batch.chunks(1000) {
                    diesel::insert_into(events::table).values(chunk).execute(conn).await?;
                }
                Ok(())
            })
            .await
        }
        Db::Sqlite(pool) => {
            let mut conn = pool.get().await?;
            conn.transaction::<_, Error, _>(async |conn| {
                for event in batch {
                    diesel::insert_into(events::table).values(event).execute(conn).await?;
                }
                Ok(())
            })
            .await
        }
    }
}

/// The tenant's most recent events, newest first, optionally of one type.
pub async fn recent(db: &Db, tenant_id: &str, event_type: Option<&str>, limit: i64) -> Result<Vec<Event>> {
    with_conn!(db, |conn| {
        let mut query = events::table
            .filter(events::tenant_id.eq(tenant_id))
            .select(Event::as_select())
            .order(events::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(event_type) = event_type {
            query = query.filter(events::event_type.eq(event_type.to_owned()));
        }
        Ok(query.load(conn).await?)
    })
}
