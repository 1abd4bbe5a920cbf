//! Instance-wide settings kept in the database.

use super::schema::settings;
use super::Db;
use crate::error::Result;
use crate::with_conn;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

/// The stored value for `key`, if any.
pub async fn get(db: &Db, key: &str) -> Result<Option<String>> {
    with_conn!(db, |conn| {
        Ok(settings::table
            .filter(settings::key.eq(key))
            .select(settings::value)
            .first::<String>(conn)
            .await
            .optional()?)
    })
}

/// Returns the stored value for `key`, storing `make()` first if there is none. Concurrent
/// first callers (several replicas starting at once) all end up with the same value.
pub async fn get_or_insert(db: &Db, key: &str, make: impl FnOnce() -> String) -> Result<String> {
    let candidate = make();
    with_conn!(db, |conn| {
        diesel::insert_into(settings::table)
            .values((settings::key.eq(key), settings::value.eq(&candidate)))
            .on_conflict(settings::key)
            .do_nothing()
            .execute(conn)
            .await?;
        Ok(settings::table
            .filter(settings::key.eq(key))
            .select(settings::value)
            .first::<String>(conn)
            .await?)
    })
}
