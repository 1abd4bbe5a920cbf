//! Keeping PostgreSQL's busiest tables vacuumed.
//!
//! Every job leaves dead row versions behind: its claim and its result each write a new
//! version, and neither is a HOT update (`status` is indexed), so each also leaves dead
//! entries in the job indexes. Until VACUUM clears them, the claim's index scan steps over
//! them. Measured with the bench (`--only throughput --throughput-jobs 30000`): with
//! autovacuum off, PostgreSQL's CPU per job rose from ~0.8 ms to ~2.1 ms over 30,000 jobs
//! and throughput fell from ~1,000 to ~620 jobs/s. Autovacuum, where it is on, looks at a
//! table at most once a minute and waits until a fifth of it is dead: a queue churns
//! through that much in seconds.
//!
//! So every [`CHECK_EVERY`] each replica reads the dead-row counts of [`TABLES`] and
//! vacuums those [`due`] says are due, on a connection of its own (never one the requests
//! need). `SKIP_LOCKED` makes a replica skip a table another one is vacuuming already.
//! Plain VACUUM takes no lock that reads or writes wait for.

use crate::error::Result;
use diesel::sql_types::{Array, BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use std::time::{Duration, Instant};

/// How often the dead-row counts are read.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The tables that churn: jobs (claims, results), their live output, agents (heartbeats),
/// the event log, integration deliveries and API keys (`last_used_at`).
pub const TABLES: [&str; 6] = ["jobs", "job_output", "agents", "events", "deliveries", "api_keys"];

/// Fewest dead rows worth a vacuum, whatever the table's size.
const MIN_DEAD: i64 = 1_000;
/// Past the minimum, a vacuum waits for this share of the live rows to be dead, so that
/// its cost (it reads every index of the table whole) stays a small constant per dead row.
const DEAD_SHARE: f64 = 0.1;

/// Whether a table with `dead` dead and `live` live rows is due for a vacuum.
pub fn due(dead: i64, live: i64) -> bool {
    dead >= MIN_DEAD && dead as f64 >= live.max(0) as f64 * DEAD_SHARE
}

#[derive(QueryableByName)]
struct Counts {
    #[diesel(sql_type = Text)]
    table: String,
    #[diesel(sql_type = BigInt)]
    dead: i64,
    #[diesel(sql_type = BigInt)]
    live: i64,
}

/// Vacuums the tables of [`TABLES`] that are due; returns which ones it vacuumed.
pub async fn vacuum_due(conn: &mut AsyncPgConnection) -> Result<Vec<&'static str>> {
    let counts: Vec<Counts> = diesel::sql_query(
        "SELECT relname::text AS table, n_dead_tup AS dead, n_live_tup AS live FROM pg_stat_user_tables \
         WHERE schemaname = current_schema() AND relname = ANY($1)",
    )
    .bind::<Array<Text>, _>(TABLES.to_vec())
    .load(conn)
    .await?;
    let mut vacuumed = Vec::new();
    for counts in counts.iter().filter(|c| due(c.dead, c.live)) {
        // The name that goes into the statement is our own constant, never the catalog's.
        let Some(table) = TABLES.iter().find(|t| **t == counts.table) else {
            continue;
        };
        let started = Instant::now();
        conn.batch_execute(&format!("VACUUM (SKIP_LOCKED) {table}")).await?;
        tracing::debug!(
            table,
            dead = counts.dead,
            live = counts.live,
            ms = started.elapsed().as_millis() as u64,
            "vacuumed"
        );
        vacuumed.push(*table);
    }
    Ok(vacuumed)
}

/// Runs [`vacuum_due`] every [`CHECK_EVERY`] for as long as the process lives,
/// reconnecting after an error.
pub fn spawn(database_url: String) {
    actix_rt::spawn(async move {
        let mut conn: Option<AsyncPgConnection> = None;
        let mut tick = actix_rt::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if conn.is_none() {
                match AsyncPgConnection::establish(&database_url).await {
                    Ok(established) => conn = Some(established),
                    Err(error) => {
                        tracing::debug!(%error, "maintenance: no database connection; trying again");
                        continue;
                    }
                }
            }
            let Some(established) = conn.as_mut() else { continue };
            if let Err(error) = vacuum_due(established).await {
                tracing::warn!(%error, "maintenance: vacuum failed; reconnecting");
                conn = None;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_dead_rows_wait() {
        assert!(!due(0, 0));
        assert!(!due(999, 0));
        assert!(due(1_000, 0));
        assert!(due(1_000, 10_000));
    }

    #[test]
    fn a_large_table_waits_for_a_share_of_its_rows() {
        assert!(!due(5_000, 1_000_000));
        assert!(due(100_000, 1_000_000));
        assert!(due(100_000, -1), "a negative estimate counts as empty");
    }
}
