//! Each test's own database: a fresh PostgreSQL database when SCRIPTMESH_TEST_POSTGRES_URL
//! names a server (dropped again when the test ends), otherwise a SQLite file in the
//! test's temporary directory. Tests may also run SQL on it to set up what the API cannot
//! (an API key that expired yesterday, say).

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, SqliteConnection};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use rand::distr::{Alphanumeric, SampleString};
use std::path::Path;

/// The variable that switches the suite to PostgreSQL: an admin URL such as
/// `postgres://postgres@127.0.0.1:5432/postgres`, used to create and drop test databases.
pub const POSTGRES_URL_VARIABLE: &str = "SCRIPTMESH_TEST_POSTGRES_URL";

type SqliteAsync = SyncConnectionWrapper<SqliteConnection>;

pub enum TestDatabase {
    Sqlite {
        url: String,
        path: String,
    },
    Postgres {
        url: String,
        admin_url: String,
        name: String,
    },
}

#[derive(QueryableByName)]
struct IntegerRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    value: Option<i64>,
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = Nullable<Text>)]
    value: Option<String>,
}

/// Runs `$body` with `$conn` bound to a fresh connection of the database's backend.
macro_rules! with_connection {
    ($database:expr, |$conn:ident| $body:expr) => {
        match $database {
            TestDatabase::Sqlite { path, .. } => {
                let mut $conn = SqliteAsync::establish(path)
                    .await
                    .unwrap_or_else(|e| panic!("cannot open the test SQLite database {path}: {e}"));
                // The orchestrator may be writing at the same moment.
                $conn
                    .batch_execute("PRAGMA busy_timeout = 10000")
                    .await
                    .expect("set busy_timeout");
                $body
            }
            TestDatabase::Postgres { url, name, .. } => {
                let mut $conn = AsyncPgConnection::establish(url)
                    .await
                    .unwrap_or_else(|e| panic!("cannot connect to the test database {name}: {e}"));
                $body
            }
        }
    };
}

impl TestDatabase {
    /// A new, empty database (the orchestrator applies its migrations at start-up).
    pub async fn create(dir: &Path) -> TestDatabase {
        match std::env::var(POSTGRES_URL_VARIABLE)
            .ok()
            .filter(|url| !url.trim().is_empty())
        {
            Some(admin_url) => Self::create_postgres(admin_url.trim()).await,
            None => {
                let path = dir
                    .join("scriptmesh.db")
                    .to_str()
                    .expect("the temp dir path is UTF-8")
                    .to_owned();
                TestDatabase::Sqlite {
                    url: format!("sqlite://{path}"),
                    path,
                }
            }
        }
    }

    async fn create_postgres(admin_url: &str) -> TestDatabase {
        let name = format!(
            "sm_test_{}",
            Alphanumeric.sample_string(&mut rand::rng(), 16).to_lowercase()
        );
        let mut url = url::Url::parse(admin_url)
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_VARIABLE} is not a URL ({e}): {admin_url}"));
        url.set_path(&format!("/{name}"));
        let mut admin = AsyncPgConnection::establish(admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_VARIABLE} ({e}); is PostgreSQL running?"));
        // The name is generated above from [a-z0-9], so it needs no quoting.
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
        TestDatabase::Postgres {
            url: url.to_string(),
            admin_url: admin_url.to_owned(),
            name,
        }
    }

    /// What the orchestrator gets as DATABASE_URL.
    pub fn url(&self) -> &str {
        match self {
            TestDatabase::Sqlite { url, .. } | TestDatabase::Postgres { url, .. } => url,
        }
    }

    /// "sqlite" or "postgres".
    pub fn backend_name(&self) -> &'static str {
        match self {
            TestDatabase::Sqlite { .. } => "sqlite",
            TestDatabase::Postgres { .. } => "postgres",
        }
    }

    /// Runs one statement and returns the number of rows it changed.
    pub async fn exec(&self, sql: &str) -> usize {
        with_connection!(self, |conn| diesel::sql_query(sql)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("SQL failed: {e}\n{sql}")))
    }

    /// Runs a query whose single column is named `value` and holds whole numbers
    /// (`SELECT count(*) AS value ...`). On PostgreSQL an INTEGER column must be cast:
    /// `CAST(attempts AS BIGINT) AS value`.
    pub async fn query_i64(&self, sql: &str) -> Vec<Option<i64>> {
        let rows: Vec<IntegerRow> = with_connection!(self, |conn| diesel::sql_query(sql)
            .load(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("SQL failed: {e}\n{sql}")));
        rows.into_iter().map(|row| row.value).collect()
    }

    /// Runs a query whose single column is named `value` and holds text
    /// (`SELECT status AS value FROM jobs ...`).
    pub async fn query_text(&self, sql: &str) -> Vec<Option<String>> {
        let rows: Vec<TextRow> = with_connection!(self, |conn| diesel::sql_query(sql)
            .load(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("SQL failed: {e}\n{sql}")));
        rows.into_iter().map(|row| row.value).collect()
    }
}

impl Drop for TestDatabase {
    /// Drops a PostgreSQL test database. Runs on its own thread and runtime because Drop
    /// cannot await and the test's runtime may be single-threaded (or shutting down).
    fn drop(&mut self) {
        let TestDatabase::Postgres { admin_url, name, .. } = self else {
            return; // The SQLite file goes with the temporary directory.
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for dropping the test database");
            runtime
                .block_on(async {
                    let mut admin = AsyncPgConnection::establish(&admin_url).await?;
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await?;
                    Ok::<(), Box<dyn std::error::Error>>(())
                })
                .map_err(|e| e.to_string())
        });
        match dropper.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("warning: could not drop the test database {}: {error}", self.url()),
            Err(_) => eprintln!("warning: dropping the test database {} panicked", self.url()),
        }
    }
}
