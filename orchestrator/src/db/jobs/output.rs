//! Live output: the chunks agents stream while their jobs run, kept with the job and read
//! back by followers. Only a running job of the sending agent takes chunks. Of a job's
//! live output the first [`LIVE_HEAD`] bytes and the newest [`LIVE_TAIL`] are kept, as the
//! agent keeps head and tail of the output in the result; what lies between is dropped
//! as newer chunks arrive, and readers see the gap in the offsets.

use super::RUNNING;
use crate::db::models::OutputRow;
use crate::db::schema::{job_output, jobs};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::with_conn;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use shared_protocol::protocol::{OutputAck, OutputChunk};
use std::collections::{BTreeMap, BTreeSet};

/// Bytes at the start of a job's live output that are always kept.
pub const LIVE_HEAD: u64 = 512 * 1024;
/// Bytes at the end of a job's live output that are kept as it grows.
pub const LIVE_TAIL: u64 = 512 * 1024;

/// Where the kept tail of a job's live output starts once it reached `end`: chunks that
/// end at or before it (and start past the head) are dropped.
pub fn tail_start(end: u64) -> Option<u64> {
    (end > LIVE_HEAD + LIVE_TAIL).then(|| end - LIVE_TAIL)
}

/// Whether a chunk is worth keeping when the job's live output already reached `end`.
fn kept(chunk: &OutputChunk, end: u64) -> bool {
    chunk.offset < LIVE_HEAD || tail_start(end).is_none_or(|start| chunk.end() > start)
}

/// Stores the chunks of `agent`'s running jobs (a retried chunk is stored once) and says
/// which jobs take no more.
pub async fn append(db: &Db, tenant_id: &str, agent: &str, chunks: &[OutputChunk]) -> Result<OutputAck> {
    let sent: BTreeSet<&str> = chunks.iter().map(|chunk| chunk.job_id.as_str()).collect();
    let now = crate::db::now_ms();
    with_conn!(db, |conn| {
        // Read before, not inside, the writing transaction: on SQLite a transaction that
        // reads first cannot wait for the write lock (it fails busy at once when another
        // writer committed meanwhile). A job that ends in between only keeps a last chunk.
        let running: BTreeSet<String> = jobs::table
            .filter(jobs::tenant_id.eq(tenant_id))
            .filter(jobs::agent_name.eq(agent))
            .filter(jobs::id.eq_any(&sent))
            .filter(jobs::status.eq(RUNNING))
            .select(jobs::id)
            .load::<String>(conn)
            .await?
            .into_iter()
            .collect();
        let live: Vec<&OutputChunk> = chunks.iter().filter(|chunk| running.contains(&chunk.job_id)).collect();
        // Each job's newest end in this batch: older chunks behind its tail are not kept.
        let mut ends: BTreeMap<&str, u64> = BTreeMap::new();
        for chunk in &live {
            let end = ends.entry(chunk.job_id.as_str()).or_default();
            *end = (*end).max(chunk.end());
        }
        if !live.is_empty() {
            conn.transaction::<_, Error, _>(async |conn| {
                for chunk in live.iter().filter(|chunk| kept(chunk, ends[chunk.job_id.as_str()])) {
                    diesel::insert_into(job_output::table)
                        .values(OutputRow::new(tenant_id, chunk, now))
                        .on_conflict_do_nothing()
                        .execute(conn)
                        .await?;
                }
                for (job_id, end) in &ends {
                    if let Some(start) = tail_start(*end) {
                        diesel::delete(
                            job_output::table
                                .filter(job_output::job_id.eq(job_id))
                                .filter(job_output::start_offset.ge(LIVE_HEAD as i64))
                                .filter(job_output::end_offset.le(start as i64)),
                        )
                        .execute(conn)
                        .await?;
                    }
                }
                Ok(())
            })
            .await?;
        }
        let stop = sent
            .into_iter()
            .filter(|job_id| !running.contains(*job_id))
            .map(str::to_owned)
            .collect();
        Ok(OutputAck {
            accepted: live.len(),
            stop,
        })
    })
}

/// Up to `limit` of the job's chunks that end past `after`, in order.
pub async fn read(db: &Db, tenant_id: &str, job_id: &str, after: u64, limit: i64) -> Result<Vec<OutputRow>> {
    with_conn!(db, |conn| {
        Ok(job_output::table
            .filter(job_output::job_id.eq(job_id))
            .filter(job_output::tenant_id.eq(tenant_id))
            .filter(job_output::end_offset.gt(after as i64))
            .order(job_output::start_offset)
            .limit(limit)
            .select(OutputRow::as_select())
            .load(conn)
            .await?)
    })
}

/// Whether the job has any live output stored (a job that finished before its agent sent
/// any has only the output of its result).
pub async fn has_any(db: &Db, tenant_id: &str, job_id: &str) -> Result<bool> {
    with_conn!(db, |conn| {
        Ok(job_output::table
            .filter(job_output::job_id.eq(job_id))
            .filter(job_output::tenant_id.eq(tenant_id))
            .select(job_output::start_offset)
            .first::<i64>(conn)
            .await
            .optional()?
            .is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_protocol::protocol::OutputStream;

    fn chunk(offset: u64, len: usize) -> OutputChunk {
        OutputChunk {
            job_id: "job_1".into(),
            stream: OutputStream::Stdout,
            offset,
            data: "x".repeat(len),
        }
    }

    #[test]
    fn small_outputs_are_kept_whole() {
        assert_eq!(tail_start(LIVE_HEAD + LIVE_TAIL), None);
        assert!(kept(&chunk(LIVE_HEAD + 10, 10), LIVE_HEAD + LIVE_TAIL));
    }

    #[test]
    fn past_the_cap_head_and_tail_stay() {
        let end = 4 * (LIVE_HEAD + LIVE_TAIL);
        assert_eq!(tail_start(end), Some(end - LIVE_TAIL));
        // The head stays, whatever came after.
        assert!(kept(&chunk(0, 100), end));
        assert!(kept(&chunk(LIVE_HEAD - 1, 100), end));
        // The middle goes; a chunk reaching into the tail stays.
        assert!(!kept(&chunk(LIVE_HEAD, 100), end));
        assert!(!kept(&chunk(end - LIVE_TAIL - 100, 100), end));
        assert!(kept(&chunk(end - LIVE_TAIL - 100, 101), end));
        assert!(kept(&chunk(end - 100, 100), end));
    }
}
