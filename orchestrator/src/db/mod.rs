//! Storage: one diesel schema served by PostgreSQL (diesel-async's `AsyncPgConnection`) or
//! SQLite (bundled, through `SyncConnectionWrapper`), picked by `DATABASE_URL`.
//! Repository modules hold the SQL; everything above them speaks in models.

pub mod accounts;
pub mod agents;
pub mod audit;
pub mod events;
pub mod integrations;
pub mod jobs;
pub mod maintenance;
pub mod members;
pub mod metrics;
pub mod models;
pub mod schedules;
pub mod schema;
pub mod settings;

use crate::error::{Error, Result};
use diesel::{Connection, SqliteConnection};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use futures_util::FutureExt;
use std::time::Duration;

pub type SqliteAsync = SyncConnectionWrapper<SqliteConnection>;

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

/// Which database a URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres(String),
    /// A file path (the `sqlite://` prefix removed).
    Sqlite(String),
}

impl Backend {
    pub fn from_url(url: &str) -> std::result::Result<Backend, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres(url.to_owned()))
        } else if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            if path.is_empty() {
                Err("sqlite:// needs a file path, e.g. sqlite://scriptmesh.db".into())
            } else {
                Ok(Backend::Sqlite(path.to_owned()))
            }
        } else {
            Err(format!(
                "{:?} is neither postgres://... nor sqlite://path",
                url.split('@').next_back().unwrap_or_default()
            ))
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        }
    }
}

/// A pool of connections to one of the two backends. Cheap to clone.
#[derive(Clone)]
pub enum Db {
    Postgres(Pool<AsyncPgConnection>),
    Sqlite(Pool<SqliteAsync>),
}

/// Marks a hand-written statement `$name<'a>` as one of fixed text (a static query id) that
/// returns untyped rows: diesel then prepares it once per connection and reuses it.
#[macro_export]
macro_rules! fixed_statement {
    ($name:ident) => {
        impl diesel::query_builder::QueryId for $name<'_> {
            type QueryId = $name<'static>;
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        impl diesel::query_builder::Query for $name<'_> {
            type SqlType = diesel::sql_types::Untyped;
        }
    };
}

/// Runs `$body` with `$conn` bound to a pooled connection of whichever backend `$db` uses.
/// The body is compiled once per backend, so any diesel query valid on both can be used.
#[macro_export]
macro_rules! with_conn {
    ($db:expr, |$conn:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Postgres(pool) => {
                let mut guard = pool.get().await?;
                #[allow(unused_mut)]
                let mut $conn = &mut *guard;
                $body
            }
            $crate::db::Db::Sqlite(pool) => {
                let mut guard = pool.get().await?;
                #[allow(unused_mut)]
                let mut $conn = &mut *guard;
                $body
            }
        }
    };
}

/// Runs `body` in a PostgreSQL transaction opened by `begin`: `BEGIN` and whatever `SET
/// LOCAL` the transaction needs, sent as one simple query (one round trip, where a
/// separate SET would cost another). Commits when `body` succeeds, else rolls back; what
/// diesel's `transaction` does, with a chosen first statement.
pub async fn pg_transaction<R>(
    conn: &mut AsyncPgConnection,
    begin: &str,
    body: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<R>,
) -> Result<R> {
    use diesel_async::{AnsiTransactionManager, TransactionManager};
    AnsiTransactionManager::begin_transaction_sql(conn, begin).await?;
    match body(conn).await {
        Ok(value) => {
            AnsiTransactionManager::commit_transaction(conn).await?;
            Ok(value)
        }
        Err(error) => {
            // The body's error says more than a failed rollback would; a connection left
            // in a transaction is not given out again by the pool.
            let _ = AnsiTransactionManager::rollback_transaction(conn).await;
            Err(error)
        }
    }
}

/// The busy timeout comes first: switching to WAL takes a lock too, and a new connection
/// opened while another one writes must wait for it rather than fail "database is locked".
const SQLITE_SETUP: &str = "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;";

impl Db {
    /// Applies pending migrations (on a blocking thread), then opens the pool.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Db> {
        let backend = Backend::from_url(url).map_err(Error::Internal)?;
        migrate(&backend).await?;
        Db::open(&backend, pool_size)
    }

    fn open(backend: &Backend, pool_size: usize) -> Result<Db> {
        let build_error = |e: deadpool::managed::BuildError| Error::Internal(format!("database pool: {e}"));
        match backend {
            Backend::Postgres(url) => {
                // No test query on every checkout (a round trip per database use): a
                // connection whose socket closed is noticed and replaced anyway.
                let mut config = ManagerConfig::<AsyncPgConnection>::default();
                config.recycling_method = RecyclingMethod::Fast;
                let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url.clone(), config);
                let pool = Pool::builder(manager)
                    .max_size(pool_size)
                    .runtime(deadpool::Runtime::Tokio1)
                    .wait_timeout(Some(Duration::from_secs(10)))
                    .create_timeout(Some(Duration::from_secs(5)))
                    .build()
                    .map_err(build_error)?;
                Ok(Db::Postgres(pool))
            }
            Backend::Sqlite(path) => {
                let mut config = ManagerConfig::<SqliteAsync>::default();
                config.recycling_method = RecyclingMethod::Fast;
                config.custom_setup = Box::new(|url| {
                    async move {
                        let mut conn = SqliteAsync::establish(url).await?;
                        conn.batch_execute(SQLITE_SETUP)
                            .await
                            .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                        Ok(conn)
                    }
                    .boxed()
                });
                let manager = AsyncDieselConnectionManager::<SqliteAsync>::new_with_config(path.clone(), config);
                // SQLite has one writer; a few connections let reads proceed beside it, and
                // the busy timeout queues writers instead of failing them.
                let pool = Pool::builder(manager)
                    .max_size(pool_size.min(4))
                    .runtime(deadpool::Runtime::Tokio1)
                    .wait_timeout(Some(Duration::from_secs(10)))
                    .build()
                    .map_err(build_error)?;
                Ok(Db::Sqlite(pool))
            }
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Db::Postgres(_) => "postgres",
            Db::Sqlite(_) => "sqlite",
        }
    }

    /// A cheap round trip, for `/health`.
    pub async fn ping(&self) -> Result<()> {
        with_conn!(self, |conn| {
            conn.batch_execute("SELECT 1").await?;
            Ok(())
        })
    }
}

/// Applies the embedded migrations of the URL's backend. Runs on its own thread because
/// diesel's migration harness is synchronous.
pub async fn migrate(backend: &Backend) -> Result<()> {
    let backend = backend.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(migrate_blocking(&backend));
    });
    rx.await.map_err(|_| Error::Internal("migration thread died".into()))?
}

/// The PostgreSQL advisory lock key held while migrations run ("scriptme" in ASCII).
const MIGRATION_LOCK: i64 = 0x7363_7269_7074_6d65;

pub fn migrate_blocking(backend: &Backend) -> Result<()> {
    let migration_error = |e: Box<dyn std::error::Error + Send + Sync>| Error::Internal(format!("migrations: {e}"));
    match backend {
        Backend::Postgres(url) => {
            let mut conn = <AsyncConnectionWrapper<AsyncPgConnection> as Connection>::establish(url)
                .map_err(|e| Error::DatabaseUnavailable(e.to_string()))?;
            // Replicas starting together take turns: the first applies what is pending, the
            // others then find nothing to do. (The lock goes with the connection.)
            diesel::connection::SimpleConnection::batch_execute(
                &mut conn,
                &format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"),
            )?;
            conn.run_pending_migrations(PG_MIGRATIONS).map_err(migration_error)?;
            diesel::connection::SimpleConnection::batch_execute(
                &mut conn,
                &format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"),
            )?;
        }
        Backend::Sqlite(path) => {
            let mut conn = SqliteConnection::establish(path).map_err(|e| Error::DatabaseUnavailable(e.to_string()))?;
            diesel::connection::SimpleConnection::batch_execute(&mut conn, SQLITE_SETUP)?;
            conn.run_pending_migrations(SQLITE_MIGRATIONS)
                .map_err(migration_error)?;
        }
    }
    Ok(())
}

/// Milliseconds since the Unix epoch: how every time is stored.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A new time-ordered id with a type prefix, e.g. `job_0193...`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// How far a row's id time may trail its `created_at` (clocks of replicas apart, a slow
/// insert): [`id_floor`] reaches back this much further.
const ID_CLOCK_MARGIN_MS: i64 = 3_600_000;

/// A lower bound for the ids ([`new_id`], UUIDv7: their first 12 hex digits are the time
/// in ms) of the rows with `prefix` created at or after `since_ms`: a query for recent rows
/// adds `id >= id_floor(..)` to its `created_at` filter and walks the (tenant_id, id) index
/// from there, so no index on `created_at` is kept up to date on every insert.
pub fn id_floor(prefix: &str, since_ms: i64) -> String {
    let from = (since_ms - ID_CLOCK_MARGIN_MS).clamp(0, 0xffff_ffff_ffff);
    format!("{prefix}_{from:012x}")
}

/// RFC 3339 (UTC, second precision with a `Z`), as the API shows times.
pub fn format_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn format_time_opt(ms: Option<i64>) -> Option<String> {
    ms.map(format_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_floor_bounds_the_ids_made_since_its_time() {
        let now = now_ms();
        let id = new_id("job");
        assert!(id >= id_floor("job", now), "{id}");
        assert!(
            id >= id_floor("job", now + ID_CLOCK_MARGIN_MS - 1_000),
            "within the margin: {id}"
        );
        assert!(id < id_floor("job", now + ID_CLOCK_MARGIN_MS + 60_000), "{id}");
        assert_eq!(id_floor("job", 0), "job_000000000000");
    }
}
