//! Keeping PostgreSQL's busiest tables vacuumed and their statistics current.
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
//!
//! Statistics too: with autovacuum off nothing ever ANALYZEs, and without statistics the
//! planner takes every `tenant_id = $1` for a rare value. The results UPDATE's generic
//! plan then walked the tenant's whole slice of `jobs_queue` instead of one primary-key
//! probe per result: ~380 buffers and 3.2 ms a batch, 60 % of PostgreSQL's time in the
//! bench, growing with the table. So a table whose rows changed enough since it was last
//! analyzed ([`analyze_due`]) is analyzed with its vacuum, or alone; that also makes every
//! connection re-plan its prepared statements with the new figures.

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

/// The tables whose plans depend on their statistics: the hot statements filter and join
/// them on several indexed columns. The others are read by one obvious index, and an
/// append-only log like `events` would be re-sampled for nothing as it grows.
const ANALYZED: [&str; 3] = ["jobs", "job_output", "agents"];

/// Fewest dead rows worth a vacuum, whatever the table's size.
const MIN_DEAD: i64 = 1_000;
/// Past the minimum, a vacuum waits for this share of the live rows to be dead, so that
/// its cost (it reads every index of the table whole) stays a small constant per dead row.
const DEAD_SHARE: f64 = 0.1;

/// Fewest changed rows worth new statistics for a table that has some already.
const MIN_MODIFIED: i64 = 1_000;
/// Past the minimum, new statistics wait for as many changed rows as the table has live
/// ones. A queue's shape hardly moves once it is known, and each ANALYZE costs a sample of
/// up to 30,000 rows and makes every connection re-plan its statements on the table. Every
/// job counts two or three changes (insert, claim, result), so this is one new job for
/// every two or three in the table. At a fifth of the live rows, `jobs` was analyzed again
/// each time it grew by ~8 %: in a 30,000-job bench run ANALYZE and VACUUM took ~14 % of
/// PostgreSQL's CPU (perf), and throughput was ~5 % lower than now.
const MODIFIED_SHARE: f64 = 1.0;
/// A table never analyzed gets its first statistics once this many rows changed: until
/// then its plans are guesses.
const FIRST_ANALYZE_MODIFIED: i64 = 100;

/// Whether a table with `dead` dead and `live` live rows is due for a vacuum.
pub fn due(dead: i64, live: i64) -> bool {
    dead >= MIN_DEAD && dead as f64 >= live.max(0) as f64 * DEAD_SHARE
}

/// Whether a table with `modified` rows changed since its last ANALYZE (`analyzed`: it
/// has had one) and `live` live rows is due for new statistics.
pub fn analyze_due(modified: i64, live: i64, analyzed: bool) -> bool {
    if !analyzed {
        return modified >= FIRST_ANALYZE_MODIFIED;
    }
    modified >= MIN_MODIFIED && modified as f64 >= live.max(0) as f64 * MODIFIED_SHARE
}

/// The statement that brings a table up to date, if it needs one.
fn upkeep(table: &str, vacuum: bool, analyze: bool) -> Option<String> {
    match (vacuum, analyze) {
        (true, true) => Some(format!("VACUUM (SKIP_LOCKED, ANALYZE) {table}")),
        (true, false) => Some(format!("VACUUM (SKIP_LOCKED) {table}")),
        (false, true) => Some(format!("ANALYZE (SKIP_LOCKED) {table}")),
        (false, false) => None,
    }
}

#[derive(QueryableByName)]
struct Counts {
    #[diesel(sql_type = Text)]
    table: String,
    #[diesel(sql_type = BigInt)]
    dead: i64,
    #[diesel(sql_type = BigInt)]
    live: i64,
    #[diesel(sql_type = BigInt)]
    modified: i64,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    analyzed: bool,
}

/// Vacuums and analyzes the tables of [`TABLES`] that are due.
pub async fn upkeep_due(conn: &mut AsyncPgConnection) -> Result<()> {
    let counts: Vec<Counts> = diesel::sql_query(
        "SELECT relname::text AS table, n_dead_tup AS dead, n_live_tup AS live, \
         n_mod_since_analyze AS modified, \
         (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL) AS analyzed \
         FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = ANY($1)",
    )
    .bind::<Array<Text>, _>(TABLES.to_vec())
    .load(conn)
    .await?;
    for counts in &counts {
        // The name that goes into the statement is our own constant, never the catalog's.
        let Some(table) = TABLES.iter().find(|t| **t == counts.table) else {
            continue;
        };
        let vacuum = due(counts.dead, counts.live);
        let analyze = ANALYZED.contains(table) && analyze_due(counts.modified, counts.live, counts.analyzed);
        let Some(statement) = upkeep(table, vacuum, analyze) else {
            continue;
        };
        let started = Instant::now();
        conn.batch_execute(&statement).await?;
        tracing::debug!(
            %statement,
            dead = counts.dead,
            live = counts.live,
            modified = counts.modified,
            ms = started.elapsed().as_millis() as u64,
            "table upkeep"
        );
    }
    Ok(())
}

/// Runs [`upkeep_due`] every [`CHECK_EVERY`] for as long as the process lives,
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
            if let Err(error) = upkeep_due(established).await {
                tracing::warn!(%error, "maintenance: table upkeep failed; reconnecting");
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

    #[test]
    fn a_table_never_analyzed_gets_statistics_early() {
        assert!(!analyze_due(99, 0, false));
        assert!(analyze_due(100, 50, false));
        assert!(!analyze_due(100, 50, true), "one with statistics waits longer");
    }

    #[test]
    fn statistics_are_renewed_once_a_share_of_the_rows_changed() {
        assert!(!analyze_due(999, 0, true));
        assert!(analyze_due(1_000, 1_000, true));
        assert!(!analyze_due(1_000, 5_000, true));
        assert!(!analyze_due(999_999, 1_000_000, true));
        assert!(analyze_due(1_000_000, 1_000_000, true));
    }

    #[test]
    fn one_statement_per_table_does_what_is_due() {
        assert_eq!(
            upkeep("jobs", true, true).as_deref(),
            Some("VACUUM (SKIP_LOCKED, ANALYZE) jobs")
        );
        assert_eq!(
            upkeep("jobs", true, false).as_deref(),
            Some("VACUUM (SKIP_LOCKED) jobs")
        );
        assert_eq!(
            upkeep("jobs", false, true).as_deref(),
            Some("ANALYZE (SKIP_LOCKED) jobs")
        );
        assert_eq!(upkeep("jobs", false, false), None);
    }
}
